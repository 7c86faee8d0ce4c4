# classic CNN (8.8)
# expect: classic-cnn=equivalent mg-resnet=special-case sigma-resnet=special-case resnet=special-case
model classic_cnn_base {
  param width = 4
  input x : 3 x 16 x 16
  classes 10
  grids 2
  smooth 2
  space f = width

  f_in      = relu . bn . conv3(x -> f)
  chi[l, i] = bn . conv3(f -> f)
  T[l]      = relu . bn . conv3(f -> f, stride 2)
  fc        = linear(f -> classes)

  init    f = f_in(x)
  step    f = chi(relu(f))
  coarsen f[l+1] = T(f)
  output  fc(avgpool(f))
}
