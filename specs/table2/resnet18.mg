# ResNet-18 for CIFAR (3x3 stem, no max pool), the network of Table 2, as a data-space scheme.
# Reading: the standard CIFAR ResNet (He et al. 2016; kuangliu/pytorch-cifar): 11,173,962 parameters.
# Each grid is a stage; a step is a BasicBlock f = relu(f + xi(eta(f))) (7.8); the first block of a
# stage is the `coarsen` equation, with a stride-2 eta and a 1x1 stride-2 projection shortcut S.
model resnet18 {
  param width = 64   # stem width; stages are width, 2, 4, 8 x width
  input x : 3 x 32 x 32
  classes 10
  grids 4
  smooth 2, 1, 1, 1  # blocks per stage after the first: 2, 2, 2, 2 blocks in all
  space f = [width, 2 * width, 4 * width, 8 * width]

  f_in      = relu . bn . conv3(x -> f)
  eta[l, i] = relu . bn . conv3(f -> f)
  xi[l, i]  = bn . conv3(f -> f)
  eta0[l]   = relu . bn . conv3(f -> f, stride 2)
  xi0[l]    = bn . conv3(f -> f)
  S[l]      = bn . conv1(f -> f, stride 2)
  fc        = linear(f -> classes)

  init    f = f_in(x)
  step    f = relu(f + xi(eta(f)))
  coarsen f[l+1] = relu(S(f) + xi0(eta0(f)))
  output  fc(avgpool(f))
}
