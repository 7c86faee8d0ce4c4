# A = conv3 . sub_id(relu . bn . conv3) is not linear (3.17) though sub_id's own layer class says linear (found by an adversarial review); against the MgNet family the spec runs as itself, so undecided (the linearity counterexample leaves the network's states)
# expect: mgnet=undecided
model mgnet_base {
  param width = 4
  param nu = 2
  input x : 3 x 16 x 16
  classes 10
  grids 2
  smooth nu
  space u = width, f = width

  f_in    = relu . bn . conv3(x -> f)
  C[l]    = relu . bn . conv3(u -> u)
  A[l]    = conv3(u -> f) . sub_id(C[l])
  B[l, i] = relu . bn . conv3(f -> u) . relu . bn
  Pi[l]   = relu . bn . conv3(u -> u, stride 2)
  R[l]    = relu . bn . conv3(f -> f, stride 2)
  fc      = linear(u -> classes)

  init    f = f_in(x); u = 0
  step    u = u + B(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output  fc(avgpool(u))
}
