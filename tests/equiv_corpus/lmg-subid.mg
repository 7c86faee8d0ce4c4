# S = jacobi(A) . sub_id(relu . conv3) is not linear: not a linear MgNet (Theorem 6.1), but an MgNet (found by an adversarial review); with the nonlinear S the MG0 numerics find no difference on the network's states (undecided), S one per grid against MgNet's per-step B is a tying
# expect: linear-mgnet=undecided mg0=undecided mgnet=special-case
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
  C[l]  = relu . conv3(f -> f)
  S[l]  = jacobi(A[l], f -> u, omega omega) . sub_id(C[l])
  Pi[l] = conv3(u -> u, stride 2)

  init    u = 0
  step    u = u + S(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output  u
}
