"""Small spec texts shared by tests (torch-free): each test derives its variant by a textual change."""

# a two-grid MgNet on 3 x 16 x 16 images, width 4, one smoothing step per grid
TINY_MGNET = """model tiny {
  param width = 4
  input x : 3 x 16 x 16
  classes 10
  grids 2
  smooth 1
  space u = width, f = width

  f_in    = relu . bn . conv3(x -> f)
  A[l]    = conv3(u -> f)
  B[l, i] = relu . bn . conv3(f -> u)
  Pi[l]   = conv3(u -> u, stride 2)
  R[l]    = conv3(f -> f, stride 2)
  fc      = linear(u -> classes)

  init    f = f_in(x); u = 0
  step    u = u + B(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output  fc(avgpool(u))
}
"""

# a two-grid MgNet without BN: the mean gradient of a batch's shares is the whole batch's (distributed tests)
BN_FREE = """model bnfree {
  param width = 4
  input x : 3 x 8 x 8
  classes 3
  grids 2
  smooth 1
  space u = width, f = width
  f_in = relu . conv3(x -> f)
  A[l] = conv3(u -> f)
  B[l] = relu . conv3(f -> u, bias) . relu
  Pi[l] = relu . conv3(u -> u, stride 2)
  R[l] = relu . conv3(f -> f, stride 2)
  fc = linear(u -> classes)
  init f = f_in(x); u = 0
  step u = u + B(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output fc(avgpool(u))
}
"""
