# a sigma-ResNet whose xi holds a max pool: xi is not affine (7.8), so Lemma 8.2 does not make it a ResNet (found by an adversarial review)
# expect: sigma-resnet=undecided resnet=undecided
model sres_xi_maxpool {
  param width = 4
  input x : 3 x 16 x 16
  classes 10
  grids 2
  smooth 2, 0
  space f = width

  f_in      = relu . bn . conv3(x -> f)
  eta[l, i] = bn . conv3(f -> f)
  xi[l, i]  = deconv2(f -> f) . maxpool2 . conv3(f -> f)
  T[l]      = relu . bn . conv3(f -> f, stride 2)
  fc        = linear(f -> classes)

  init    f = f_in(x)
  step    f = relu(f) - xi(relu(eta(relu(f))))
  coarsen f[l+1] = T(f)
  output  fc(avgpool(f))
}
