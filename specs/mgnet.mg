# MgNet, Algorithm 3 as Theorems 8.1 and 6.1 speak of it: one A per grid, used by the smoothing and by both
# terms of the transition f[l+1] = R(f - A(u)) + A[l+1](u[l+1]) (8,278,794 params at 256/256/Pi1, the
# public code's count). The Table 2 count reading (one more, untied u->f convolution Ar[1] in the first
# restriction, 8,868,618) is specs/table2/mgnet-256-256-pi1.mg.
model mgnet {
  param width = 256
  param nu = 2
  input x : 3 x 32 x 32
  classes 10
  grids 4
  smooth nu
  space u = width, f = width

  f_in    = relu . bn . conv3(x -> f)
  A[l]    = conv3(u -> f)                        # linear (3.17): no bias, no BN
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
