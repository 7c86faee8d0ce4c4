# ResNet (7.8) whose input state is NOT a ReLU output (f_in = bn . conv): Lemma 8.2's premise fails.
model resnet_linear_stem {
  param width = 16
  input x : 3 x 32 x 32
  classes 10
  grids 4
  smooth 2
  space f = width

  f_in      = bn . conv3(x -> f)
  eta[l, i] = bn . conv3(f -> f)
  xi[l, i]  = bn . conv3(f -> f)
  T[l]      = relu . bn . conv3(f -> f, stride 2)
  fc        = linear(f -> classes)

  init    f = f_in(x)
  step    f = relu(f + xi(relu(eta(f))))
  coarsen f[l+1] = T(f)
  output  fc(avgpool(f))
}
