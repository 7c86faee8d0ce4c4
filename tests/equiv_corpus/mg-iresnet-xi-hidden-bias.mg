# xi = conv1 . conv3(bias): a bias hidden in the composition: vs mgnet the offset is added every step and does not cancel (not-equivalent); in its own family undecided
# expect: mg-iresnet=undecided iresnet=undecided mgnet=not-equivalent
model mg_iresnet_xi_hidden_bias {
  param width = 4
  input x : 3 x 16 x 16
  classes 10
  grids 2
  smooth 2
  space f = width

  f_in      = relu . bn . conv3(x -> f)
  eta[l, i] = bn . conv3(f -> f)
  xi[l]     = conv1(f -> f) . conv3(f -> f, bias)
  T[l]      = relu . bn . conv3(f -> f, stride 2)
  fc        = linear(f -> classes)

  init    f = f_in(x)
  step    f = f - xi(relu(eta(relu(f))))
  coarsen f[l+1] = T(f)
  output  fc(avgpool(f))
}
