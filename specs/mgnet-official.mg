# MgNet as in the authors' public code: 4 A, 4 B, 3 R, 3 Pi (8,278,794 at 256/256/Pi1; the paper says 8.28M).
# Reading: the public code exactly; R(f - A(u)) reuses the grid's A. It needs c_u = c_f there;
# here R maps c_f -> c_f so c_u != c_f works too.
model mgnet_official {
  param width = 256
  param nu = 2
  input x : 3 x 32 x 32
  classes 10
  grids 4
  smooth nu
  space u = width, f = width

  f_in    = relu . bn . conv3(x -> f)
  A[l]    = conv3(u -> f)                        # linear (3.17): no bias, no BN
  eta[l]  = conv3(f -> u)                        # the extractor's convolution: one per grid
  B[l, i] = relu . bn . eta[l] . relu . bn       # sigma . eta . sigma; BN before each sigma, per step
  Pi[l]   = relu . bn . conv3(u -> u, stride 2)  # Pi_1: trained stride-2 conv
  R[l]    = relu . bn . conv3(f -> f, stride 2)
  fc      = linear(u -> classes)

  init    f = f_in(x); u = 0
  step    u = u + B(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output  fc(avgpool(u))
}
