def forward(self, x):
    v0 = x
    v1 = self.f_in(v0)  # f^{1,0} down
    v2 = F.relu(v1)
    v3 = self.chi["1"]["1"](v2)  # f^{1,1} down
    v4 = F.relu(v3)
    v5 = self.chi["1"]["2"](v4)  # f^{1,2} down
    v6 = self.T["1"](v5)  # f^{2,0} down
    v7 = F.relu(v6)
    v8 = self.chi["2"]["1"](v7)  # f^{2,1} down
    v9 = F.relu(v8)
    v10 = self.chi["2"]["2"](v9)  # f^{2,2} down
    v11 = self.T["2"](v10)  # f^{3,0} down
    v12 = F.relu(v11)
    v13 = self.chi["3"]["1"](v12)  # f^{3,1} down
    v14 = F.relu(v13)
    v15 = self.chi["3"]["2"](v14)  # f^{3,2} down
    v16 = self.T["3"](v15)  # f^{4,0} down
    v17 = F.relu(v16)
    v18 = self.chi["4"]["1"](v17)  # f^{4,1} down
    v19 = F.relu(v18)
    v20 = self.chi["4"]["2"](v19)  # f^{4,2} down
    v21 = v20.mean((-2, -1))
    v22 = self.fc(v21)
    return v22
