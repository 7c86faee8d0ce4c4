# A = bn . conv is affine in eval mode, A(u) = W u + b: Theorem 8.1 holds with ξ = W, the offset cancels
# expect: mgnet=equivalent mg-iresnet=equivalent iresnet=special-case
model mgnet_A_bn {
  param width = 4
  param nu = 2
  input x : 3 x 16 x 16
  classes 10
  grids 2
  smooth nu
  space u = width, f = width

  f_in    = relu . bn . conv3(x -> f)
  A[l]    = bn . conv3(u -> f)
  B[l, i] = relu . bn . conv3(f -> u) . relu . bn
  Pi[l]   = relu . bn . conv3(u -> u, stride 2)
  R[l]    = relu . bn . conv3(f -> f, stride 2)
  fc      = linear(u -> classes)

  init    f = f_in(x); u = 0
  step    u = u + B(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output  fc(avgpool(u))
}
