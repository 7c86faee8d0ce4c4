# A = conv . relu applied to u: every reachable u >= 0 (u starts at 0, B and Pi end in relu), so A(relu(u)) = A(u) there: Theorem 8.1 with xi = conv
# expect: mgnet=equivalent mg-iresnet=equivalent iresnet=special-case
model mgnet_A_relu_u {
  param width = 4
  param nu = 2
  input x : 3 x 16 x 16
  classes 10
  grids 2
  smooth nu
  space u = width, f = width

  f_in    = relu . bn . conv3(x -> f)
  A[l]    = conv3(u -> f) . relu
  B[l, i] = relu . bn . conv3(f -> u) . relu . bn
  Pi[l]   = relu . bn . conv3(u -> u, stride 2)
  R[l]    = relu . bn . conv3(f -> f, stride 2)
  fc      = linear(u -> classes)

  init    f = f_in(x); u = 0
  step    u = u + B(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output  fc(avgpool(u))
}
