module stackable.tech/stackable-certs/goverify

go 1.22
