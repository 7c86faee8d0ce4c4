# MgNet with fixed restrictions: R = K_R (4.13, bilinear) for f and R_max (4.16) for u; periodic padding in A.
model mgnet_pooling {
  param width = 64
  input x : 3 x 32 x 32
  classes 10
  grids 4
  smooth 2
  space u = width, f = width

  f_in    = relu . bn . conv3(x -> f)
  A[l]    = conv3(u -> f, pad periodic)
  R[l]    = restrict(f -> f, bilinear)
  Pi[l]   = maxpool3
  B[l, i] = relu . bn . conv3(f -> u, pad reflect) . relu . bn
  fc      = linear(u -> classes)

  step    u = u + B(f - A(u))
  init    f = f_in(x); u = 0
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output  fc(avgpool(u))
}
