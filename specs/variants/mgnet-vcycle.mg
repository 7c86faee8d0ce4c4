# V-MgNet (Algorithm 4): MgNet down, then u^{l,0} = u^l + P(u^{l+1} - u^{l+1,0}) (6.15) and nu' post-smoothings (6.16).
model v_mgnet {
  param width = 64
  input x : 3 x 32 x 32
  classes 10
  grids 4
  smooth 2
  postsmooth 1
  cycle V
  space u = width, f = width

  f_in    = relu . bn . conv3(x -> f)
  A[l]    = conv3(u -> f)
  R[l]    = relu . bn . conv3(f -> f, stride 2)
  Pi[l]   = relu . bn . conv3(u -> u, stride 2)
  P[l]    = relu . bn . deconv3(u -> u, stride 2)
  fc      = linear(u -> classes)
  B[l, i] = relu . bn . conv3(f -> u) . relu . bn
  C[l, i] = relu . bn . conv3(f -> u) . relu . bn

  step     u = u + B(f - A(u))
  poststep u = u + C(f - A(u))
  refine   u = u + P(u[l+1] - u[l+1, 0])
  init     f = f_in(x); u = 0
  coarsen  u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output   fc(avgpool(u))
}
