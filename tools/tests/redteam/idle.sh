# Does nothing: a bystander, a victim, or an agent whose sandbox the test
# looks at from the host.
echo done
exec sleep 600
