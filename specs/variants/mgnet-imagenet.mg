# The authors' ImageNet model MgNet[3,4,6,3]-[128,256,512,1024]-B^{l,i} (71.3M reported), with the
# ImageNet stem f_in = R_max . sigma . theta0 (7x7 stride-2 conv, 3x3 max pool), section 7.2.
# Reading: variable extractors B[l, i]; A, Pi and R per grid; 1000 classes. mgdsl counts 71,270,504
# parameters (reported: 71.3M, a 0.04% difference).
model mgnet_imagenet {
  input x : 3 x 224 x 224
  classes 1000
  grids 4
  smooth 3, 4, 6, 3
  space u = [128, 256, 512, 1024], f = [128, 256, 512, 1024]

  f_in    = maxpool3 . relu . bn . conv7(x -> f, stride 2)
  A[l]    = conv3(u -> f)
  B[l, i] = relu . bn . conv3(f -> u) . relu . bn
  R[l]    = relu . bn . conv3(f -> f, stride 2)
  Pi[l]   = relu . bn . conv3(u -> u, stride 2)
  fc      = linear(u -> classes)

  init    f = f_in(x); u = 0
  step    u = u + B(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output  fc(avgpool(u))
}
