# Classic (VGG-like) CNN (7.1)/(8.8): f^{l,i} = chi^{l,i}(sigma(f^{l,i-1})), chi a conv with BN.
model classic_cnn {
  param width = 64
  input x : 3 x 32 x 32
  classes 10
  grids 4
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
