-- Run once by the postgres image on an empty data directory (/docker-entrypoint-initdb.d):
-- one role and one database per service, and the registry's; role = database = password, the
-- same names as scripts/lib/stack-postgres.sh ("order" is a reserved word, hence the prefix).
CREATE ROLE shop_order LOGIN PASSWORD 'shop_order';
CREATE DATABASE shop_order OWNER shop_order;
CREATE ROLE shop_inventory LOGIN PASSWORD 'shop_inventory';
CREATE DATABASE shop_inventory OWNER shop_inventory;
CREATE ROLE shop_payment LOGIN PASSWORD 'shop_payment';
CREATE DATABASE shop_payment OWNER shop_payment;
CREATE ROLE shop_shipping LOGIN PASSWORD 'shop_shipping';
CREATE DATABASE shop_shipping OWNER shop_shipping;
CREATE ROLE shop_gateway LOGIN PASSWORD 'shop_gateway';
CREATE DATABASE shop_gateway OWNER shop_gateway;
CREATE ROLE registry LOGIN PASSWORD 'registry';
CREATE DATABASE registry OWNER registry;
