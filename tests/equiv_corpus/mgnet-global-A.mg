# one A for the whole model (no index): the family has one A per grid, so a tying A[l] := A (special case)
# expect: mgnet=special-case mg-iresnet=special-case iresnet=special-case
model mgnet_global_A {
  param width = 4
  param nu = 2
  input x : 3 x 16 x 16
  classes 10
  grids 2
  smooth nu
  space u = width, f = width

  f_in    = relu . bn . conv3(x -> f)
  A       = conv3(u -> f)
  B[l, i] = relu . bn . conv3(f -> u) . relu . bn
  Pi[l]   = relu . bn . conv3(u -> u, stride 2)
  R[l]    = relu . bn . conv3(f -> f, stride 2)
  fc      = linear(u -> classes)

  init    f = f_in(x); u = 0
  step    u = u + B(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A(u[l+1])
  output  fc(avgpool(u))
}
