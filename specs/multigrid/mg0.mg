# Algorithm 1 (MG0) for -Laplace u = f (5.1): fixed 5-point K_A (5.4) with zero padding, bilinear
# K_R (4.13), P = R^T, Galerkin A[l+1] = R A P (5.11), damped Jacobi (5.6) with omega = 0.8.
# The output is u on the coarsest grid; the down pass only (no prolongation).
model mg0 {
  param n = 33
  param omega = 0.8
  param kr = bilinear  # restriction kernel K_R: bilinear (4.13) or linear (4.14); -D kr=linear
  param nu = 2
  input f : 1 x n x n
  grids auto
  smooth nu
  space u = 1, f = 1

  A[1] = laplace(u -> f)
  A[l] = R[l-1] . A[l-1] . P[l-1]  # Galerkin coarse operator, exact at the boundary
  R[l] = restrict(f -> f, kr)
  P[l] = transpose(R[l])
  S[l] = jacobi(A[l], f -> u, omega omega)

  init    u = 0
  step    u = u + S(f - A(u))
  coarsen u[l+1] = 0; f[l+1] = R(f - A(u))
  output  u
}
