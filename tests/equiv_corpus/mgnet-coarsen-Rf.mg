# the transition f[l+1] = R(f) drops A^{l+1}(u[l+1]) and the residual: r^{l+1,0} is not R(r^{l,nu}); running both networks through every grid shows the difference at grid 2 (Algorithm 3)
# expect: mgnet=not-equivalent mg-iresnet=not-equivalent iresnet=not-equivalent
model mgnet_base {
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

  init    f = f_in(x); u = 0
  step    u = u + B(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f)
  output  fc(avgpool(u))
}
