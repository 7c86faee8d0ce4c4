# xi = conv3 . sub_id(relu . conv3): sub_id(C) = C - id is as non-linear as C, so xi is not linear (7.9) (found by an adversarial review); against the MgNet family the spec runs as itself, so undecided (the linearity counterexample leaves the network's states)
# expect: iresnet=undecided
model ires_subid {
  param width = 4
  input x : 3 x 16 x 16
  classes 10
  grids 2
  smooth 2
  space f = width

  f_in      = relu . bn . conv3(x -> f)
  eta[l, i] = bn . conv3(f -> f)
  C[l, i]   = relu . conv3(f -> f)
  xi[l, i]  = conv3(f -> f) . sub_id(C[l, i])
  T[l]      = relu . bn . conv3(f -> f, stride 2)
  fc        = linear(f -> classes)

  init    f = f_in(x)
  step    f = f - xi(relu(eta(relu(f))))
  coarsen f[l+1] = T(f)
  output  fc(avgpool(f))
}
