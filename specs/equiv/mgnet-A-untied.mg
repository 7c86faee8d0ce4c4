# MgNet with A untied per step (A[l, i]): the change of variables of Theorem 8.1 needs one A per grid.
model mgnet_A_untied {
  param width = 16
  param nu = 3  # with 2 steps the first A only ever sees u = 0
  input x : 3 x 32 x 32
  classes 10
  grids 4
  smooth nu
  space u = width, f = width

  f_in    = relu . bn . conv3(x -> f)
  A[l, i] = conv3(u -> f)                        # one A per step
  Ac[l]   = conv3(u -> f)                        # the A of the coarsening
  eta[l]  = conv3(f -> u)                        # the extractor's convolution: one per grid
  B[l, i] = relu . bn . eta[l] . relu . bn       # sigma . eta . sigma; BN before each sigma, per step
  Pi[l]   = relu . bn . conv3(u -> u, stride 2)  # Pi_1: trained stride-2 conv
  R[l]    = relu . bn . conv3(f -> f, stride 2)
  fc      = linear(u -> classes)

  init    f = f_in(x); u = 0
  step    u = u + B(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - Ac(u)) + Ac[l+1](u[l+1])
  output  fc(avgpool(u))
}
