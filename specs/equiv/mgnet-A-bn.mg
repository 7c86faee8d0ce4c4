# MgNet whose A is followed by BN: affine in eval mode, A(u) = W u + b; Theorem 8.1 holds with ξ = W.
model mgnet_A_bn {
  param width = 16
  param nu = 2
  input x : 3 x 32 x 32
  classes 10
  grids 4
  smooth nu
  space u = width, f = width

  f_in    = relu . bn . conv3(x -> f)
  A[l]    = bn . conv3(u -> f)                   # BN after A: affine
  eta[l]  = conv3(f -> u)                        # the extractor's convolution: one per grid
  B[l, i] = relu . bn . eta[l] . relu . bn       # sigma . eta . sigma; BN before each sigma, per step
  Pi[l]   = relu . bn . conv3(u -> u, stride 2)  # Pi_1: trained stride-2 conv
  R[l]    = relu . bn . conv3(f -> f, stride 2)
  fc      = linear(u -> classes)

  init    f = f_in(x); u = 0
  step    u = u + B(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output  fc(avgpool(u))
}
