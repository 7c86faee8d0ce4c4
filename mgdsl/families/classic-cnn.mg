# Classic CNN (7.1), (8.8): f^{l,i} = chi^{l,i} sigma(f^{l,i-1}).
# Canonical form used by `mgdsl check --equiv` to build the target model: its equations and sharing are
# the family's; the operator bodies are placeholders that the check fills with the spec's operators
# through the correspondence (a copy per instance where the family unties them).
model classic_cnn {
  param J = 2
  param nu = 2
  input f : 1 x 16 x 16
  grids J
  smooth nu
  space f = 1

  chi[l, i] = bn . conv3(f -> f)
  D[l]      = conv3(f -> f, stride 2)

  step    f = chi(relu(f))
  coarsen f[l+1] = D(f)
  output  f
}
