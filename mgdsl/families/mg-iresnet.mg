# Mg-iResNet (Table 1): iResNet with one xi^l per grid.
# Canonical form used by `mgdsl check --equiv` to build the target model: its equations and sharing are
# the family's; the operator bodies are placeholders that the check fills with the spec's operators
# through the correspondence (a copy per instance where the family unties them).
model mg_iresnet {
  param J = 2
  param nu = 2
  input f : 1 x 16 x 16
  grids J
  smooth nu
  space f = 1

  xi[l]   = conv3(f -> f)                # linear (7.9), one per grid
  B[l, i] = relu . conv3(f -> f) . relu  # sigma . eta . sigma
  D[l]    = conv3(f -> f, stride 2)

  step    f = f - xi(B(f))
  coarsen f[l+1] = D(f)
  output  f
}
