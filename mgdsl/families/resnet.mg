# ResNet (7.8): f^{l,i} = sigma(f^{l,i-1} - xi^{l,i} sigma eta^{l,i}(f^{l,i-1})).
# Canonical form used by `mgdsl check --equiv` to build the target model: its equations and sharing are
# the family's; the operator bodies are placeholders that the check fills with the spec's operators
# through the correspondence (a copy per instance where the family unties them).
model resnet {
  param J = 2
  param nu = 2
  input f : 1 x 16 x 16
  grids J
  smooth nu
  space f = 1

  xi[l, i] = bn . conv3(f -> f)         # one per step
  T[l, i]  = relu . bn . conv3(f -> f)  # sigma . eta
  D[l]     = conv3(f -> f, stride 2)

  step    f = relu(f - xi(T(f)))
  coarsen f[l+1] = D(f)
  output  f
}
