# a classic CNN whose chi holds a max pool: chi is not affine (8.8), Theorem 8.3's eta would not be (found by an adversarial review)
# expect: mg-resnet=undecided resnet=undecided
model cnn_chi_maxpool {
  param width = 4
  input x : 3 x 16 x 16
  classes 10
  grids 2
  smooth 2, 0
  space f = width

  f_in      = relu . bn . conv3(x -> f)
  eta[l, i] = bn . conv3(f -> f)
  chi[l, i] = deconv2(f -> f) . maxpool2 . conv3(f -> f)
  T[l]      = relu . bn . conv3(f -> f, stride 2)
  fc        = linear(f -> classes)

  init    f = f_in(x)
  step    f = chi(relu(f))
  coarsen f[l+1] = T(f)
  output  fc(avgpool(f))
}
