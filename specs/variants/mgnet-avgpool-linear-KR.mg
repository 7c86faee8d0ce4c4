# MgNet with R = K_R linear (4.14) and Pi = R_ave (4.15, 3x3 average, stride 2).
model mgnet_avg_linear {
  param width = 64
  input x : 3 x 32 x 32
  classes 10
  grids 4
  smooth 2
  space u = width, f = width

  f_in    = relu . bn . conv3(x -> f)
  A[l]    = conv3(u -> f)
  R[l]    = restrict(f -> f, linear)
  Pi[l]   = restrict(u -> u, average)
  B[l, i] = relu . bn . conv3(f -> u) . relu . bn
  fc      = linear(u -> classes)

  step    u = u + B(f - A(u))
  init    f = f_in(x); u = 0
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output  fc(avgpool(u))
}
