# Mg-iResNet (Table 1): iResNet with xi tied to one xi^l per grid.
model mg_iresnet {
  param width = 64
  input x : 3 x 32 x 32
  classes 10
  grids 4
  smooth 2
  space f = width

  f_in      = relu . bn . conv3(x -> f)
  eta[l, i] = bn . conv3(f -> f)
  xi[l]     = conv3(f -> f)
  T[l]      = relu . bn . conv3(f -> f, stride 2)
  fc        = linear(f -> classes)

  init    f = f_in(x)
  step    f = f - xi(relu(eta(relu(f))))
  coarsen f[l+1] = T(f)
  output  fc(avgpool(f))
}
