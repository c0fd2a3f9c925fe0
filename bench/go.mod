module github.com/masqnet/masq/bench

go 1.26.3

require golang.org/x/image v0.48.0
