# the step applies C(D(u)), both bias-free convolutions per grid
# expect: mgnet=equivalent mg-iresnet=equivalent iresnet=special-case
model mgnet_A_inline_composition {
  param width = 4
  param nu = 2
  input x : 3 x 16 x 16
  classes 10
  grids 2
  smooth nu
  space u = width, f = width

  f_in    = relu . bn . conv3(x -> f)
  A[l]    = conv3(u -> f)
  B[l, i] = relu . bn . conv3(f -> u) . relu . bn
  Pi[l]   = relu . bn . conv3(u -> u, stride 2)
  R[l]    = relu . bn . conv3(f -> f, stride 2)
  fc      = linear(u -> classes)
  C[l]    = conv3(u -> f)
  D[l]    = conv1(u -> u)

  init    f = f_in(x); u = 0
  step    u = u + B(f - C(D(u)))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - C(D(u))) + C[l+1](D[l+1](u[l+1]))
  output  fc(avgpool(u))
}
