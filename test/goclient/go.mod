module berth.test/goclient

go 1.19

require github.com/varlink/go v0.4.0

replace github.com/varlink/go => /usr/share/gocode/src/github.com/varlink/go
