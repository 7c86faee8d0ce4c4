# Multi-step MgNet (6.8): u^{l,i} = sum_j alpha_j (u^{l,j} + B_j(f - A u^{l,j})).
model mgnet_multistep {
  param width = 64
  input x : 3 x 32 x 32
  classes 10
  grids 4
  smooth 3
  space u = width, f = width

  f_in           = relu . bn . conv3(x -> f)
  A[l]           = conv3(u -> f)
  R[l]           = relu . bn . conv3(f -> f, stride 2)
  Pi[l]          = relu . bn . conv3(u -> u, stride 2)
  fc             = linear(u -> classes)
  B[l, i, j]     = relu . bn . conv3(f -> u) . relu . bn
  alpha[l, i, j] = scale(init 0.5)

  step    u = sum(j < i: alpha(u[j] + B(f - A(u[j]))))
  init    f = f_in(x); u = 0
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output  fc(avgpool(u))
}
