module github.com/fleetscan/fleetscan/test/integration

go 1.26
