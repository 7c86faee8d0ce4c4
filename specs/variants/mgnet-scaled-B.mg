# MgNet with scaled extractors alpha_i B^l: one B per grid, a trained scalar per step.
model mgnet_scaled_B {
  param width = 64
  input x : 3 x 32 x 32
  classes 10
  grids 4
  smooth 2
  space u = width, f = width

  f_in    = relu . bn . conv3(x -> f)
  A[l]    = conv3(u -> f)
  R[l]    = relu . bn . conv3(f -> f, stride 2)
  Pi[l]   = relu . bn . conv3(u -> u, stride 2)
  fc      = linear(u -> classes)
  B0[l]   = relu . bn . conv3(f -> u) . relu . bn
  B[l, i] = scale(init 1) . B0[l]

  step    u = u + B(f - A(u))
  init    f = f_in(x); u = 0
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output  fc(avgpool(u))
}
