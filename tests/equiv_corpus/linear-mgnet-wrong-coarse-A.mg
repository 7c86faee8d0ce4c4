# the transition adds Pi2(u) = restrict(A(u)) for A[l+1](u[l+1]): not (6.6)
# expect: mg0=not-equivalent
model linear_mgnet_wrong_coarse_A {
  param n = 17
  param omega = 0.8
  param nu = 2
  input f : 1 x n x n
  grids auto
  smooth nu
  space u = 1, f = 1

  A[1]   = laplace(u -> f)
  A[l]   = R[l-1] . A[l-1] . P[l-1]
  R[l]   = restrict(f -> f)
  P[l]   = transpose(R[l])
  S[l]   = jacobi(A[l], f -> u, omega omega)
  Pi[l]  = conv3(u -> u, stride 2)
  Pi2[l] = restrict(f -> f) . A[l]

  init    u = 0
  step    u = u + S(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + Pi2(u)
  output  u
}
