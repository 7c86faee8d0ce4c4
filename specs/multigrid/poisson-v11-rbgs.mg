# V(1,1)-cycle multigrid for (5.1) with red-black Gauss-Seidel smoothing: one sweep before and one after the
# coarse-grid correction. Coarsest grid solved exactly (S = A^-1 there).
model poisson_v11_rbgs {
  param n = 33
  param kr = bilinear  # restriction kernel K_R: bilinear (4.13) or linear (4.14); -D kr=linear
  param nu = 1
  input f : 1 x n x n
  grids auto
  smooth nu
  postsmooth nu
  cycle V
  space u = 1, f = 1

  A[1] = laplace(u -> f)
  A[l] = R[l-1] . A[l-1] . P[l-1]
  R[l] = restrict(f -> f, kr)
  P[l] = transpose(R[l])
  S[l] = rbgs(A[l], f -> u)
  S[J] = inverse(A[J], f -> u)  # exact coarsest solve

  init    u = 0
  step    u = u + S(f - A(u))
  coarsen u[l+1] = 0; f[l+1] = R(f - A(u))
  refine  u = u + P[l](u[l+1])
  output  u
}
