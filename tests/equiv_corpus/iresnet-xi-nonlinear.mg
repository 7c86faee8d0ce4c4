# xi = relu . bn . conv3: not the linear xi of (7.9); the linearity counterexample leaves the network's states, so undecided
# expect: iresnet=undecided mg-iresnet=undecided mgnet=undecided
model iresnet_xi_nonlinear {
  param width = 4
  input x : 3 x 16 x 16
  classes 10
  grids 2
  smooth 2
  space f = width

  f_in      = relu . bn . conv3(x -> f)
  eta[l, i] = bn . conv3(f -> f)
  xi[l, i]  = relu . bn . conv3(f -> f)
  T[l]      = relu . bn . conv3(f -> f, stride 2)
  fc        = linear(f -> classes)

  init    f = f_in(x)
  step    f = f - xi(relu(eta(relu(f))))
  coarsen f[l+1] = T(f)
  output  fc(avgpool(f))
}
