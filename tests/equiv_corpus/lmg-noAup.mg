# u[l+1] = Pi(u) is not 0 but f[l+1] has no A^{l+1}(u[l+1]) term: (6.6) fails (found by an adversarial review); running both networks shows grid 2 starting elsewhere, so linear-mgnet too is not-equivalent
# expect: linear-mgnet=not-equivalent mg0=not-equivalent
model linear_mgnet_base {
  param n = 17
  param omega = 0.8
  param nu = 2
  input f : 1 x n x n
  grids auto
  smooth nu
  space u = 1, f = 1

  A[1]  = laplace(u -> f)
  A[l]  = R[l-1] . A[l-1] . P[l-1]
  R[l]  = restrict(f -> f)
  P[l]  = transpose(R[l])
  S[l]  = jacobi(A[l], f -> u, omega omega)
  Pi[l] = conv3(u -> u, stride 2)

  init    u = 0
  step    u = u + S(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u))
  output  u
}
