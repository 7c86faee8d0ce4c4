# Linear MgNet (Theorem 6.1): MgNet with A, R and B = S linear.
# Canonical form used by `mgdsl check --equiv` to build the target model: its equations and sharing are
# the family's; the operator bodies are placeholders that the check fills with the spec's operators
# through the correspondence (a copy per instance where the family unties them).
model linear_mgnet {
  param J = 2
  param nu = 2
  input f : 1 x 16 x 16
  grids J
  smooth nu
  space u = 1, f = 1

  A[l]  = conv3(u -> f)
  B[l]  = conv3(f -> u)  # B = S^l, one per grid
  Pi[l] = conv3(u -> u, stride 2)
  R[l]  = conv3(f -> f, stride 2)

  init    u = 0
  step    u = u + B(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output  u
}
