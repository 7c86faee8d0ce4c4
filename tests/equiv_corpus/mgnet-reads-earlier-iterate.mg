# the residual reads an earlier iterate u[i-2] from step 2 on: not the single-step form (6.4)
# expect: mgnet=undecided mg-iresnet=undecided
model mgnet_reads_earlier_iterate {
  param width = 4
  input x : 3 x 16 x 16
  classes 10
  grids 2
  smooth 3
  space u = width, f = width
  f_in    = relu . bn . conv3(x -> f)
  A[l]    = conv3(u -> f)
  B[l, i] = relu . bn . conv3(f -> u) . relu . bn
  C[l]    = conv3(u -> f)
  Pi[l]   = relu . bn . conv3(u -> u, stride 2)
  R[l]    = relu . bn . conv3(f -> f, stride 2)
  fc      = linear(u -> classes)
  init    f = f_in(x); u = 0
  step[1] u = u + B(f - A(u))
  step    u = u + B(C(u[i-2]) - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output  fc(avgpool(u))
}
