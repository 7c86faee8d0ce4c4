# every operator and both states renamed
# expect: mgnet=equivalent mg-iresnet=equivalent iresnet=special-case
model mgnet_renamed {
  param width = 4
  param nu = 2
  input x : 3 x 16 x 16
  classes 10
  grids 2
  smooth nu
  space v = width, g = width

  f_in      = relu . bn . conv3(x -> g)
  Phi[l]    = conv3(v -> g)
  Psi[l, i] = relu . bn . conv3(g -> v) . relu . bn
  Pi[l]     = relu . bn . conv3(v -> v, stride 2)
  R[l]      = relu . bn . conv3(g -> g, stride 2)
  fc        = linear(v -> classes)

  init    g = f_in(x); v = 0
  step    v = v + Psi(g - Phi(v))
  coarsen v[l+1] = Pi(v); g[l+1] = R(g - Phi(v)) + Phi[l+1](v[l+1])
  output  fc(avgpool(v))
}
