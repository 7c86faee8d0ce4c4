# Mg-iResNet: xi one per grid
# expect: mg-iresnet=equivalent iresnet=special-case mgnet=equivalent
model mg_iresnet_base {
  param width = 4
  input x : 3 x 16 x 16
  classes 10
  grids 2
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
