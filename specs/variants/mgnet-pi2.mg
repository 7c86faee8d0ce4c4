# MgNet with Pi_2 (6.24): a channel-wise (depthwise) stride-2 interpolation.
model mgnet_pi2 {
  param width = 64
  input x : 3 x 32 x 32
  classes 10
  grids 4
  smooth 2
  space u = width, f = width

  f_in    = relu . bn . conv3(x -> f)
  A[l]    = conv3(u -> f)
  R[l]    = relu . bn . conv3(f -> f, stride 2)
  Pi[l]   = relu . bn . conv3(u -> u, stride 2, depthwise)
  fc      = linear(u -> classes)
  B[l, i] = relu . bn . conv3(f -> u) . relu . bn

  step    u = u + B(f - A(u))
  init    f = f_in(x); u = 0
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output  fc(avgpool(u))
}
