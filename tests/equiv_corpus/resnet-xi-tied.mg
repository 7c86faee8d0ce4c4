# ResNet (7.8) with xi tied per grid: by Lemma 8.2 a sigma-ResNet with one xi per grid, i.e. Mg-ResNet (8.6)
# expect: mg-resnet=equivalent sigma-resnet=special-case resnet=special-case mg-iresnet=not-equivalent
model resnet_xi_tied {
  param width = 4
  input x : 3 x 16 x 16
  classes 10
  grids 2
  smooth 2
  space f = width

  f_in      = relu . bn . conv3(x -> f)
  eta[l, i] = bn . conv3(f -> f)
  xi[l]     = bn . conv3(f -> f)
  T[l]      = relu . bn . conv3(f -> f, stride 2)
  fc        = linear(f -> classes)

  init    f = f_in(x)
  step    f = relu(f + xi(relu(eta(f))))
  coarsen f[l+1] = T(f)
  output  fc(avgpool(f))
}
