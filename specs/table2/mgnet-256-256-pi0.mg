# MgNet, Table 2 row "2, (256, 256), Pi0" (zero interpolation, (6.23)): Algorithm 3 with the authors' public-code forward pass.
# Reading: the authors' structure (4 A, 4 B, 3 R, 3 Pi) plus one more u->f convolution, an untied
# A for the first restriction's residual (Ar[1]); with it the four Table 2 counts are matched
# (this spec: 7,097,610; the public code without Ar[1] is specs/mgnet-official.mg, 8.28M).
model mgnet_256_256_pi0 {
  param width = 256
  param nu = 2
  input x : 3 x 32 x 32
  classes 10
  grids 4
  smooth nu
  space u = width, f = width

  f_in    = relu . bn . conv3(x -> f)
  A[l]    = conv3(u -> f)                   # linear (3.17): no bias, no BN
  Ar[l]   = A[l]                            # residual operator of the restriction ...
  Ar[1]   = conv3(u -> f)                   # ... untied on grid 1 (the 9th u<->f conv)
  eta[l]  = conv3(f -> u)                   # the extractor's convolution: one per grid
  B[l, i] = relu . bn . eta[l] . relu . bn  # sigma . eta . sigma; BN before each sigma, per step
  R[l]    = relu . bn . conv3(f -> f, stride 2)
  fc      = linear(u -> classes)

  init    f = f_in(x); u = 0
  step    u = u + B(f - A(u))
  coarsen u[l+1] = 0; f[l+1] = R(f - Ar(u)) + A[l+1](u[l+1])  # Pi_0 = 0, so A(u[l+1]) = 0
  output  fc(avgpool(u))
}
