# MgNet[2,2,2,2]-[64,128,256,512]: per-grid channels c_{u,l} = c_{f,l} (6.20).
model mgnet_2222_64_512 {
  input x : 3 x 32 x 32
  classes 10
  grids 4
  smooth 2
  space u = [64, 128, 256, 512], f = [64, 128, 256, 512]

  f_in    = relu . bn . conv3(x -> f)
  A[l]    = conv3(u -> f)
  eta[l]  = conv3(f -> u)
  B[l, i] = relu . bn . eta[l] . relu . bn
  R[l]    = relu . bn . conv3(f -> f, stride 2)
  Pi[l]   = relu . bn . conv3(u -> u, stride 2)
  fc      = linear(u -> classes)

  init    f = f_in(x); u = 0
  step    u = u + B(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output  fc(avgpool(u))
}
