# MG0, Algorithm 1: u^{l,i} = u^{l,i-1} + S^l(f^l - A^l u^{l,i-1}) (5.12), u^{l+1,0} = 0, f^{l+1} = R(f^l - A^l u^l).
# Canonical form used by `mgdsl check --equiv` to build the target model: its equations and sharing are
# the family's; the operator bodies are placeholders that the check fills with the spec's operators
# through the correspondence (a copy per instance where the family unties them).
model mg0 {
  param J = 2
  param nu = 2
  input f : 1 x 16 x 16
  grids J
  smooth nu
  space u = 1, f = 1

  A[l] = conv3(u -> f)
  S[l] = conv3(f -> u)
  R[l] = conv3(f -> f, stride 2)

  init    u = 0
  step    u = u + S(f - A(u))
  coarsen u[l+1] = 0; f[l+1] = R(f - A(u))
  output  u
}
