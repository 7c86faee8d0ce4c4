# DenseNet in the paper's form (7.10): f^{l,i} = sigma(sum_j theta_j^{l,i} * f^{l,j}).
model densenet {
  param width = 64
  input x : 3 x 32 x 32
  classes 10
  grids 4
  smooth 3
  space f = width

  f_in           = relu . bn . conv3(x -> f)
  theta[l, i, j] = bn . conv3(f -> f)
  T[l]           = relu . bn . conv3(f -> f, stride 2)
  fc             = linear(f -> classes)

  init    f = f_in(x)
  step    f = relu(sum(j < i: theta(f[j])))
  coarsen f[l+1] = T(f)
  output  fc(avgpool(f))
}
