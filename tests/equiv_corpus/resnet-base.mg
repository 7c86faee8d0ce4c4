# ResNet (7.8)
# expect: resnet=equivalent sigma-resnet=equivalent mg-resnet=not-equivalent mg-iresnet=not-equivalent
model resnet_base {
  param width = 4
  input x : 3 x 16 x 16
  classes 10
  grids 2
  smooth 2
  space f = width

  f_in      = relu . bn . conv3(x -> f)
  eta[l, i] = bn . conv3(f -> f)
  xi[l, i]  = bn . conv3(f -> f)
  T[l]      = relu . bn . conv3(f -> f, stride 2)
  fc        = linear(f -> classes)

  init    f = f_in(x)
  step    f = relu(f + xi(relu(eta(f))))
  coarsen f[l+1] = T(f)
  output  fc(avgpool(f))
}
