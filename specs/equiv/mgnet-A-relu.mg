# MgNet with a nonlinear A (3.18) = xi . sigma . eta: Theorem 8.1 does not apply.
model mgnet_A_relu {
  param width = 16
  param nu = 2
  input x : 3 x 32 x 32
  classes 10
  grids 4
  smooth nu
  space u = width, f = width

  f_in    = relu . bn . conv3(x -> f)
  A[l]    = conv3(u -> f) . relu . conv3(u -> u)  # nonlinear A (3.18)
  eta[l]  = conv3(f -> u)                         # the extractor's convolution: one per grid
  B[l, i] = relu . bn . eta[l] . relu . bn        # sigma . eta . sigma; BN before each sigma, per step
  Pi[l]   = relu . bn . conv3(u -> u, stride 2)   # Pi_1: trained stride-2 conv
  R[l]    = relu . bn . conv3(f -> f, stride 2)
  fc      = linear(u -> classes)

  init    f = f_in(x); u = 0
  step    u = u + B(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output  fc(avgpool(u))
}
