# Chebyshev-semi MgNet (6.9): u^{l,i} = w (u + B(f - A u)) + (1 - w) u^{l,i-2}; step 1 is a plain step.
model mgnet_chebyshev {
  param width = 64
  input x : 3 x 32 x 32
  classes 10
  grids 4
  smooth 3
  space u = width, f = width

  f_in    = relu . bn . conv3(x -> f)
  A[l]    = conv3(u -> f)
  R[l]    = relu . bn . conv3(f -> f, stride 2)
  Pi[l]   = relu . bn . conv3(u -> u, stride 2)
  fc      = linear(u -> classes)
  B[l, i] = relu . bn . conv3(f -> u) . relu . bn
  w[l, i] = scale(init 1)

  step[1] u = u + B(f - A(u))
  step    u = w(u + B(f - A(u))) + u[i-2] - w(u[i-2])
  init    f = f_in(x); u = 0
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output  fc(avgpool(u))
}
