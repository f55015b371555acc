"""Generated protocol stubs (hack/gen-proto.sh); do not edit."""
