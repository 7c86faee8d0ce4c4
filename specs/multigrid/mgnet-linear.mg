# Linear MgNet for Theorem 6.1: MgNet (Algorithm 3) with the multigrid operators of section 5 (fixed
# K_A, Galerkin A, bilinear R, damped Jacobi B = S) and a trained (random) interpolation Pi, which may be anything.
model mgnet_linear {
  param n = 33
  param omega = 0.8
  param kr = bilinear  # restriction kernel K_R: bilinear (4.13) or linear (4.14); -D kr=linear
  param nu = 2
  input f : 1 x n x n
  grids auto
  smooth nu
  space u = 1, f = 1

  A[1]  = laplace(u -> f)
  A[l]  = R[l-1] . A[l-1] . P[l-1]
  R[l]  = restrict(f -> f, kr)
  P[l]  = transpose(R[l])
  S[l]  = jacobi(A[l], f -> u, omega omega)
  Pi[l] = conv3(u -> u, stride 2)  # trained, random at initialisation

  init    u = 0
  step    u = u + S(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output  u
}
