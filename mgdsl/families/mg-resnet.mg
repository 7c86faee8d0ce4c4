# Mg-ResNet (8.6): sigma-ResNet with one xi^l per grid.
# Canonical form used by `mgdsl check --equiv` to build the target model: its equations and sharing are
# the family's; the operator bodies are placeholders that the check fills with the spec's operators
# through the correspondence (a copy per instance where the family unties them).
model mg_resnet {
  param J = 2
  param nu = 2
  input f : 1 x 16 x 16
  grids J
  smooth nu
  space f = 1

  xi[l]   = conv3(f -> f)         # one per grid
  T[l, i] = relu . conv3(f -> f)  # sigma . eta
  D[l]    = conv3(f -> f, stride 2)

  step    f = relu(f) - xi(T(relu(f)))
  coarsen f[l+1] = D(f)
  output  f
}
